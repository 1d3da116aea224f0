//! Trading controls (CMP-PRETRADE, CMP-KILL): the signal that turns a prediction into an
//! [`OrderIntent`], the pre-trade [`check_limits`] and per-algorithm [`AlgoControls`]
//! (message rate, throttle), and the [`KillSwitch`].

mod config;
mod kill;
mod pretrade;
mod signal;

pub use self::config::TradingConfig;
pub use self::kill::{KillScope, KillState, KillSwitch};
pub use self::pretrade::{AlgoControls, AlgoStatus, Breach, Control, check_limits};
pub use self::signal::{OrderIntent, Overrides, Side, derive};

/// The trading controls' shared state.
#[derive(Debug, Default)]
pub struct Trading {
    /// Per-algorithm rate and throttle.
    pub algos: AlgoControls,
    /// The kill switch.
    pub kill: KillSwitch,
}
