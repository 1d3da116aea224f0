//! Pre-trade controls (RTS 6 Art. 15): price collar, maximum order value and volume,
//! message rate per algorithm; and the throttle that repeated breaches trip.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::config::TradingConfig;
use super::signal::OrderIntent;

/// The control that refused an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Control {
    /// The limit is too far from the reference price.
    PriceCollar,
    /// Quantity × limit is over `max-order-value`.
    MaxOrderValue,
    /// Quantity is over `max-order-quantity`.
    MaxOrderVolume,
    /// The algorithm sent more than `max-messages-per-second`.
    MessageRate,
    /// The algorithm is throttled after repeated breaches, until an operator re-enables it.
    Throttle,
    /// The kill switch stops this algorithm, this trader or everything.
    KillSwitch,
    /// More algorithms than `max-algos` are tracked.
    AlgoLimit,
}

impl Control {
    /// The snake_case name used in responses and audit records.
    pub fn name(self) -> &'static str {
        match self {
            Control::PriceCollar => "price_collar",
            Control::MaxOrderValue => "max_order_value",
            Control::MaxOrderVolume => "max_order_volume",
            Control::MessageRate => "message_rate",
            Control::Throttle => "throttle",
            Control::KillSwitch => "kill_switch",
            Control::AlgoLimit => "algo_limit",
        }
    }
}

/// A refusal: the control and what exceeded it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("pre-trade control {}: {message}", control.name())]
pub struct Breach {
    /// The control.
    pub control: Control,
    /// What exceeded which limit.
    pub message: String,
}

impl Breach {
    fn new(control: Control, message: String) -> Breach {
        Breach { control, message }
    }
}

/// Checks the static limits of one intent.
///
/// # Errors
/// The first [`Breach`], in the order collar, volume, value.
pub fn check_limits(config: &TradingConfig, intent: &OrderIntent) -> Result<(), Breach> {
    let reference = intent.reference_price;
    let deviation_bps = (intent.limit_price - reference).abs() / reference * 10_000.0;
    // Compared in ticks so that a limit exactly on the collar passes whatever the float
    // rounding of the division above: the collar is `collar_bps` of the reference, rounded
    // down to the tick grid.
    let tick = config.tick_size;
    let collar_ticks = (reference * config.price_collar_bps / 10_000.0 / tick + 1e-9).floor();
    let off_ticks = ((intent.limit_price - reference).abs() / tick - 1e-9).ceil();
    if off_ticks > collar_ticks {
        return Err(Breach::new(
            Control::PriceCollar,
            format!(
                "limit {} is {deviation_bps:.1} bps from the reference {reference}, over the collar of {} bps",
                intent.limit_price, config.price_collar_bps
            ),
        ));
    }
    if intent.quantity > config.max_order_quantity {
        return Err(Breach::new(
            Control::MaxOrderVolume,
            format!(
                "quantity {} is over max-order-quantity {}",
                intent.quantity, config.max_order_quantity
            ),
        ));
    }
    let value = intent.quantity as f64 * intent.limit_price;
    if value > config.max_order_value {
        return Err(Breach::new(
            Control::MaxOrderValue,
            format!(
                "order value {value} is over max-order-value {}",
                config.max_order_value
            ),
        ));
    }
    Ok(())
}

#[derive(Debug)]
struct AlgoState {
    /// Token bucket for the message rate.
    tokens: f64,
    last: Instant,
    breaches: VecDeque<Instant>,
    throttled: bool,
}

/// Per-algorithm message rate, breach history and throttle.
#[derive(Debug, Default)]
pub struct AlgoControls {
    algos: Mutex<HashMap<String, AlgoState>>,
}

/// An algorithm's throttle state, for `GET /v2/trading/controls`.
#[derive(Debug, Clone, Serialize)]
pub struct AlgoStatus {
    /// The algorithm.
    pub algo_id: String,
    /// Breaches inside the window.
    pub recent_breaches: usize,
    /// Whether it is throttled.
    pub throttled: bool,
}

impl AlgoControls {
    /// Admits one message of `algo` at `now`: refused when throttled or over the rate.
    ///
    /// # Errors
    /// [`Breach`] with [`Control::Throttle`], [`Control::MessageRate`] or
    /// [`Control::AlgoLimit`].
    pub fn admit(&self, config: &TradingConfig, algo: &str, now: Instant) -> Result<(), Breach> {
        let mut algos = self.lock();
        if !algos.contains_key(algo) && algos.len() >= config.max_algos {
            return Err(Breach::new(
                Control::AlgoLimit,
                format!(
                    "{} algorithms are tracked, the max-algos limit",
                    config.max_algos
                ),
            ));
        }
        let rate = f64::from(config.max_messages_per_second);
        let state = algos.entry(algo.to_owned()).or_insert_with(|| AlgoState {
            tokens: rate,
            last: now,
            breaches: VecDeque::new(),
            throttled: false,
        });
        if state.throttled {
            return Err(Breach::new(
                Control::Throttle,
                format!(
                    "algorithm {algo:?} is throttled after repeated breaches; an operator must re-enable it"
                ),
            ));
        }
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(rate);
        state.last = now;
        if state.tokens < 1.0 {
            return Err(Breach::new(
                Control::MessageRate,
                format!(
                    "algorithm {algo:?} is over max-messages-per-second {}",
                    config.max_messages_per_second
                ),
            ));
        }
        state.tokens -= 1.0;
        Ok(())
    }

    /// Counts a breach of `algo`; returns true when this one tripped the throttle.
    pub fn record_breach(&self, config: &TradingConfig, algo: &str, now: Instant) -> bool {
        let mut algos = self.lock();
        let Some(state) = algos.get_mut(algo) else {
            return false;
        };
        if state.throttled {
            return false;
        }
        let window: Duration = config.breach_window;
        while state
            .breaches
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            state.breaches.pop_front();
        }
        state.breaches.push_back(now);
        if state.breaches.len() >= config.throttle_after_breaches as usize {
            state.throttled = true;
            return true;
        }
        false
    }

    /// Lifts the throttle of `algo` and forgets its breaches; false when it was not throttled.
    pub fn enable(&self, algo: &str) -> bool {
        let mut algos = self.lock();
        match algos.get_mut(algo) {
            Some(state) if state.throttled => {
                state.throttled = false;
                state.breaches.clear();
                true
            }
            _ => false,
        }
    }

    /// Every tracked algorithm that is throttled or has recent breaches.
    pub fn status(&self) -> Vec<AlgoStatus> {
        let algos = self.lock();
        let mut out: Vec<AlgoStatus> = algos
            .iter()
            .filter(|(_, s)| s.throttled || !s.breaches.is_empty())
            .map(|(id, s)| AlgoStatus {
                algo_id: id.clone(),
                recent_breaches: s.breaches.len(),
                throttled: s.throttled,
            })
            .collect();
        out.sort_by(|a, b| a.algo_id.cmp(&b.algo_id));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AlgoState>> {
        self.algos
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trading::signal::Side;

    fn intent(limit: f64, quantity: u64) -> OrderIntent {
        OrderIntent {
            algo_id: "a".into(),
            instrument: "X".into(),
            side: Side::Buy,
            quantity,
            limit_price: limit,
            reference_price: 100.0,
            prediction: 0.1,
            model: "m".into(),
            version: "1".into(),
        }
    }

    #[test]
    fn collar_is_exact_to_the_tick() {
        let c = TradingConfig::default();
        // 100 bps of 100.00 is 1.00: 101.00 passes, 101.01 (one tick more) does not.
        check_limits(&c, &intent(101.0, 1)).unwrap();
        check_limits(&c, &intent(99.0, 1)).unwrap();
        let b = check_limits(&c, &intent(101.01, 1)).unwrap_err();
        assert_eq!(b.control, Control::PriceCollar);
        assert_eq!(
            check_limits(&c, &intent(98.99, 1)).unwrap_err().control,
            Control::PriceCollar
        );
    }

    #[test]
    fn volume_and_value_limits_name_themselves() {
        let c = TradingConfig {
            max_order_value: 5_000.0,
            max_order_quantity: 60,
            ..TradingConfig::default()
        };
        check_limits(&c, &intent(100.0, 50)).unwrap();
        let b = check_limits(&c, &intent(100.0, 61)).unwrap_err();
        assert_eq!(b.control, Control::MaxOrderVolume);
        assert!(b.to_string().contains("max-order-quantity 60"), "{b}");
        let b = check_limits(&c, &intent(100.0, 51)).unwrap_err();
        assert_eq!(b.control, Control::MaxOrderValue);
    }

    #[test]
    fn message_rate_then_throttle_until_enabled() {
        let c = TradingConfig {
            max_messages_per_second: 2,
            throttle_after_breaches: 2,
            ..TradingConfig::default()
        };
        let ctl = AlgoControls::default();
        let t0 = Instant::now();
        ctl.admit(&c, "a", t0).unwrap();
        ctl.admit(&c, "a", t0).unwrap();
        assert_eq!(
            ctl.admit(&c, "a", t0).unwrap_err().control,
            Control::MessageRate
        );
        // Refilled after half a second (one token at 2/s).
        ctl.admit(&c, "a", t0 + Duration::from_millis(500)).unwrap();
        assert!(!ctl.record_breach(&c, "a", t0));
        assert!(ctl.record_breach(&c, "a", t0));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            ctl.admit(&c, "a", later).unwrap_err().control,
            Control::Throttle
        );
        // Time alone does not lift it; an operator does.
        assert!(ctl.enable("a"));
        ctl.admit(&c, "a", later).unwrap();
        assert!(!ctl.enable("a"));
    }
}
